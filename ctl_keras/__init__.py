"""ctl_keras: Complete the Look (Kang et al., CVPR 2019) in Keras 3 / TensorFlow."""

__version__ = "0.1.0"
