"""The SqueezeNet 1.1 service's code, packed into the archive beside its entry module
``squeezenet_service.py`` (MMS's handler ``squeezenet_service:handle``). It imports nothing from the
rest of the repository, so an archive runs on any MMS (and on TorchServe).

    service.py             the hooks (initialize, preprocess, inference, postprocess) and ``handle``
    errors.py              the error hierarchy, HTTP status on each class
    signature.py           signature.json and synset.txt, validated at load
    images.py              bytes -> model input: sniffing, limits, decoding, the zoo's resize/crop, scaling
    image_headers.py       cheap walks of image headers (segments, chunks, blocks) before any decoding
    decode_memory.py       what decoding an image will really allocate, from its header
    memory.py              the decode budget: the memory limit shared by the workers
    engines.py             MXNet (default) and ONNX Runtime engines, chosen from what imports; threads
    cores.py               the machine's cores, shared by the workers at run time through lock files
    graph.py               the imported MXNet graph rewritten for oneDNN, the classifier widened
    postprocessing.py      softmax and the top classes
    responses.py           JSON answers, their content type, the Accept header (406)
    protocols.py           KServe's v1/v2 request and response shapes, unwrapped outside the model code
    trust.py               what the handler checks about its own files at load: owner, signature, checksums
    signing.py             OpenSSF model signing: sign and verify a folder, bytes or an archive's digests
    load_failures.py       a model that cannot load: refused at registration, then 503 with the cause
    health.py              a loaded worker holds a lock a supervisor counts (serve, the container)
    metrics.py             Prometheus series of the stages, when a supervisor asks (multiprocess files)
    mms_worker.py          what the handler adjusts in MMS's worker process (raw bodies, content type)
    torchserve_worker.py   the same for TorchServe's worker
"""
