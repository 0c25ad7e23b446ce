"""Published weights in jaxcv's layout; `jaxcv.weights.torchvision.convert(name, state_dict)` (variables) and
`load(name, state_dict)` (the model built with the arguments the state_dict implies, and
its variables).

Command line: `python -m jaxcv.weights.torchvision NAME in.pth out.msgpack` (needs torch).
"""
