"""The maintainers' corner: what the notebooks never import.

Training the toy zoo (each model's trainer, through `diffnb.fit`, the one training loop), measuring it and writing
the model cards (`cards`), installing a run into data/models and writing the manifest (`install`), the zoo's command
line (`cli`, run as `python -m diffnb.zoo`), the full-run recipes of shipped results (`stylediffusion_run`,
`editing_run`, `sdd_run`) and the benchmark (`bench`, run as `python -m diffnb.bench`). Modules here may import any
module of diffnb; no module outside this package imports one from it, except the thin entry points of the
maintainers' layer (`diffnb.bench`, `diffnb.editing_run`, `diffnb.sdd_run`, ...; tests/test_layers.py).
"""
