"""Device-machine shim: the real polars wheel (54 MB) does not fit the 64 MiB the device tool carries.
Ultralytics imports polars only to read results.csv back into the checkpoint's metadata, inside a try/except."""


def read_csv(*args, **kwargs):
    raise RuntimeError("polars is not installed on this machine")
