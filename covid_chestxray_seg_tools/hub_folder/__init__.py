"""The Hub folder a build writes, and how its files are made and read back.

layout     where every file lives (configs, parts, shard names) and reading rows back
parquet    writing the Parquet shards and dataset_infos.json
dialect    the schema in the dialect datasets 3.x and 5.x both read
checksums  checksums.json: size and SHA-256 of every data file
resize     the size-256 configs' rules, and the way back to full size
viewer     the dataset viewer's first-rows rule, applied to a build
"""

__all__: list[str] = []
