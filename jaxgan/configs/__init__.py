"""Experiment presets: each module's ``get_config()`` returns an ml_collections ConfigDict.

Run one with ``python train.py --config=jaxgan/configs/NAME.py``; override any field with
``--config.FIELD=VALUE``. ``default.py`` documents every field.
"""
