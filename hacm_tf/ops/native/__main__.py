"""python -m hacm_tf.ops.native: build the native attention kernels now and print the library's path."""

import sys

from hacm_tf.ops import native

if __name__ == "__main__":
    try:
        print(native.build(force="--force" in sys.argv[1:]))
    except native.NativeBuildError as error:
        sys.exit(f"native attention kernels: {error}")
