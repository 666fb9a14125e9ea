"""Tasks and experiments as data: YAML -> dataclasses, errors with file:line:field.

    specs.py       from_dict / read_yaml / located: the generic YAML -> spec machinery
    task.py        TaskSpec (data files, columns, labels, metric) and the loaded TaskData
    prices.py      PriceTable and Constraints (what costs and the verdict are computed from)
    probes.py      ProbeSpec (the serving probe) and OutOfDomainSpec (the out-of-domain test file)
    experiment.py  Experiment and its parts (arms, curves, consistency, flexibility)

Reading a config imports neither torch nor scipy (a test checks it): configs are checked before
anything heavy loads.
"""
