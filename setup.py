from setuptools import find_packages, setup

setup(
    name="ctl_keras",
    version="0.1.0",
    description="Complete the Look (Kang et al., CVPR 2019): scene-based complementary product "
    "recommendation in Keras 3 / TensorFlow",
    packages=find_packages(include=["ctl_keras", "ctl_keras.*"]),
    package_data={"ctl_keras": ["datasets/*.json"]},  # the built-in dataset specs
    python_requires=">=3.10",
    # `ctl COMMAND [flags]` runs `python -m ctl_keras.<module>` (ctl_keras/__main__.py lists the commands).
    entry_points={"console_scripts": ["ctl = ctl_keras.__main__:main"]},
    # Upper bounds where the next major version is known or likely to break us (numpy 3 / faiss 2 /
    # Keras 4 / protobuf 7 change APIs or wire formats we use). The exact tested set is constraints.txt.
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.12,<4",
        "tf-keras-vis==0.8.7",
        "tensorflow-serving-api==2.21.*",
        "tensorboard==2.21.*",
        "numpy>=1.26,<3",
        "absl-py>=2.1,<3",
        "pillow>=10,<13",
        "matplotlib>=3.8,<4",
        "tqdm>=4.66,<5",  # progress bars of the long jobs (ctl_keras/utils/progress.py)
        # Dataset building and catalog embedding run on Apache Beam (FnApiRunner locally); Beam's
        # TFRecord I/O needs a CRC package that apache-beam does not install by itself.
        "apache-beam==2.77.*",
        "google-crc32c>=1.5,<2",
        "protobuf>=6.31.1,<7",  # TF 2.21 needs >=6.31.1; Apache Beam 2.77 refuses 7
        "urllib3>=2,<3",  # download.py: one pool of keep-alive connections (fetch.new_pool)
        # the manifest's leakage counts (dHash of every scene) and Table 3's model-free
        # spectral-residual saliency (cv2.saliency lives in the contrib build).
        "imagehash>=4.3,<5",
        "opencv-contrib-python-headless>=4.8,<6",
    ],
    extras_require={
        # ruff: the lint `make test` runs (ruff.toml); grpcio-tools compiles TF Serving's
        # session_bundle_config.proto for tests/serving/test_serving_protos.py.
        "test": ["pytest>=8", "ruff>=0.17,<0.18", "grpcio-tools>=1.74,<2",
                 "selenium>=4.20,<5",  # selenium: the browser tests (Debian's chromium, .ci/run)
                 "openapi-spec-validator>=0.9,<0.10"],  # checks the service's /openapi.json
        "faiss": ["faiss-cpu>=1.8,<2"],
        # GPU machines (README "GPU"): TensorFlow's CUDA wheels, and FAISS's CUDA 12 build instead of
        # faiss-cpu (both install the module `faiss`: use [gpu] without [faiss]). Linux x86_64 only.
        "gpu": ["tensorflow[and-cuda]==2.21.*",
                "faiss-gpu-cu12>=1.8,<2; platform_system == 'Linux' and platform_machine == 'x86_64'"],
        "gcp": ["apache-beam[gcp]>=2.77,<3"],  # gs:// paths and the DataflowRunner
        # python -m ctl_keras.serve (ASGI server, metrics, multipart uploads); selenium: its browser test
        "serve": ["starlette>=0.40", "uvicorn>=0.30", "prometheus-client>=0.20", "python-multipart>=0.0.9",
                  "selenium>=4.20"],
        # `recommend index --backend=milvus`: Milvus Lite embedded (in-process, a local .db), or a cluster
        "milvus": ["pymilvus==3.0.2", "milvus-lite==3.2.2"],
    },
)
