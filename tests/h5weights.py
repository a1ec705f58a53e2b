"""Read a Keras `.weights.h5` file as [(dataset path, array)] in file order, for comparisons."""

import h5py


def h5_weights(path):
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if hasattr(obj, "shape")
                     else None)
    return out
