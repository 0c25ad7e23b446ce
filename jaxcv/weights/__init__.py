"""Published weights in jaxcv's layout; `jaxcv.weights.torchvision.convert(name, state_dict)`.

Command line: `python -m jaxcv.weights.torchvision NAME in.pth out.msgpack` (needs torch).
"""
