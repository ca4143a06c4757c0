"""Ray Tune adapters: the ``Trainable`` classes that run one ``repmet`` training trial per Tune trial,
with checkpointing and metric reporting. The only place (with ``study/``) that imports Ray."""
