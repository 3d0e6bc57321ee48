"""Training runs on the Trainer: settings (`config`), one run (`run`), multi-task runs (`multitask`),
the defaults by kind of task (`defaults`), the Trainer machinery (`trainer`), task sampling (`sampling`), evaluation (`evaluation`), prompt
transfer (`transfer`) and the one writer of an output folder (`output_dir`)."""
