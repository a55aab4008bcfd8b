"""Speed of the SqueezeNet 1.1 service: engines, preprocessing, worker start-up and end to end through a
real Multi Model Server. ``python -m benchmarks.run`` (``make bench``) measures everything in one run and
writes ``benchmarks/results/report.json`` and ``report.png``.

Layout::

    run.py      the CLI: runs every stage, prints progress and the table, writes the report
    common.py   test inputs (the test model, photo-like images), timing statistics, child processes
    worker.py   what runs in a fresh child process: engines, the in-process handler, start-up, profiles
    serving.py  a real MMS: worker start-up through the management API, closed-loop HTTP load
    report.py   targets (ratios measured in the same run), the text table, the JSON and the plot

Every engine runs in a child process of its own, so that it gets the thread settings a serving worker
gets (``OMP_NUM_THREADS`` is read when MXNet loads) and no other library's threads compete with it.

The model is the test suite's stand-in for the model zoo's ``squeezenet1.1.onnx`` (same graph, node
names and layout, seeded weights; the real file cannot be downloaded here): speed does not depend on the
weights' values. Numbers only; nothing here asserts a timing.
"""
