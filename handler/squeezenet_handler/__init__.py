"""The SqueezeNet 1.1 service's code, packed into the archive beside its entry module
``squeezenet_service.py`` (MMS's handler ``squeezenet_service:handle``). It imports nothing from the
rest of the repository, so an archive runs on any MMS.

    errors.py          the error hierarchy, HTTP status on each class
    signature.py       signature.json and synset.txt, validated at load
    images.py          bytes -> model input: sniffing, limits, decoding, the zoo's resize/crop, normalising
    engines.py         MXNet (default) and ONNX Runtime engines, model files, threads
    cores.py           the machine's cores, shared by the workers at run time through lock files
    graph.py           the imported MXNet graph rewritten for oneDNN, the classifier widened
    postprocessing.py  softmax and the top classes
    trust.py           what the handler checks about its own files at load: owner, signature, checksums
    signing.py         OpenSSF model signing: sign and verify a folder, bytes or an archive's digests
    health.py          a loaded worker holds a lock a supervisor counts (serve, the container)
    metrics.py         Prometheus series of the stages, when a supervisor asks (multiprocess files)
    service.py         the hooks (initialize, preprocess, inference, postprocess) and ``handle``
"""
