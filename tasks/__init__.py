"""meena_tasks: conversation sources (TFDS builders), Meena's filters, the vocabulary and the SeqIO
tasks. Installed from `tasks/` under this name by setup.py's `package_dir`.

The trainer needs one call: ``meena_tasks.seqio_tasks.get_task(name, data_dir)``.
"""
