from setuptools import find_packages, setup

setup(
    name="ctl_keras",
    version="0.1.0",
    description="Complete the Look (Kang et al., CVPR 2019): scene-based complementary product "
    "recommendation in Keras 3 / TensorFlow",
    packages=find_packages(include=["ctl_keras", "ctl_keras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.12,<4",
        "tf-keras-vis==0.8.7",
        "tensorflow-serving-api==2.21.*",
        "tensorboard==2.21.*",
        "numpy>=1.26",
        "absl-py>=2.1",
        "pillow>=10",
        "matplotlib>=3.8",
        # Dataset building and catalog embedding run on Apache Beam (FnApiRunner locally); Beam's
        # TFRecord I/O needs a CRC package that apache-beam does not install by itself.
        "apache-beam==2.77.*",
        "google-crc32c>=1.5",
    ],
    extras_require={
        "test": ["pytest>=8", "ruff>=0.17,<0.18"],  # ruff: the lint `make test` runs (ruff.toml)
        "faiss": ["faiss-cpu>=1.8"],
        "gcp": ["apache-beam[gcp]>=2.77,<3"],  # gs:// paths and the DataflowRunner
        # `recommend index --backend=milvus`: Milvus Lite embedded (in-process, a local .db), or a cluster
        "milvus": ["pymilvus==3.0.2", "milvus-lite==3.2.2"],
    },
)
