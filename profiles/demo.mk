# Demo profile: generated data, small sizes, fits in about 10 minutes on a 2-core CPU.
WORK ?= work/demo
