"""The dataset builder as an Apache Beam pipeline (`ctl build`).

`files` (paths through Beam's filesystems), `records` (TFRecord framing), `stages` (the DoFns),
`pipeline` (the graph and its options), `swap` (staging directory -> the dataset, manifest last).
"""
