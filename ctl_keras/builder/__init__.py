"""The dataset builder as an Apache Beam pipeline (`python -m ctl_keras.build_dataset`).

`files` (paths through Beam's filesystems), `records` (TFRecord framing), `stages` (the DoFns),
`pipeline` (the graph and its options), `swap` (staging directory -> the dataset, manifest last).
"""
