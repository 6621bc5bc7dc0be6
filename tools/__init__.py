"""Operations tools (GPU check, schedule projection of a finished run), run from the repository root
as `python -m tools.<name>` or `bash tools/gpu_check.sh`."""
