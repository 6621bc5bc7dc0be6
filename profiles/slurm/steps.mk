# Slurm job steps inside one allocation: `make ... SLURM=1` (read by the Makefile before
# profiles/pipeline.mk) runs every stage as its own `srun` step, so that `make -j N` keeps the
# dependency graph, the stamps and the resume while Slurm places each step on free resources.
# Use it inside `salloc` or `sbatch` (see profiles/slurm/reproduce.sbatch). Each value can be
# overridden, e.g. `SLURM_GPU_CPUS=16 SLURM_GPU_MEM=64G`.
#
# --exact gives a step only the CPUs it asks for (Slurm >= 21.08; older versions: --exclusive), so
# steps share the allocation; a step that does not fit yet waits until an earlier one ends. Each
# GPU step sees only its own GPU (Slurm sets CUDA_VISIBLE_DEVICES); OMP_NUM_THREADS is set to the
# step's CPUs so that torch does not start a thread per core of the node. A CPU step asks for
# --gres=none: by default Slurm gives a step every GPU of the job, so a CPU step would wait until no
# GPU step runs, and no GPU step could start beside it.
SLURM_GPU_CPUS ?= 8
SLURM_GPU_MEM  ?= 32G
SLURM_CPU_CPUS ?= 4
SLURM_CPU_MEM  ?= 16G
SLURM_SRUN     ?= srun --exact --ntasks=1

LAUNCH_GPU ?= $(SLURM_SRUN) --gres=gpu:1 --cpus-per-task=$(SLURM_GPU_CPUS) --mem=$(SLURM_GPU_MEM) \
              env OMP_NUM_THREADS=$(SLURM_GPU_CPUS)
LAUNCH_CPU ?= $(SLURM_SRUN) --gres=none --cpus-per-task=$(SLURM_CPU_CPUS) --mem=$(SLURM_CPU_MEM) \
              env OMP_NUM_THREADS=$(SLURM_CPU_CPUS)
