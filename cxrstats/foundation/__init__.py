"""The foundation every stage stands on: nothing here knows about models, masks or statistics.

- `fileio`: the file contract (atomic writes, CSV reading, completion records `done*.json`,
  `run.json`, and which folders a stage may write into);
- `argtypes`: the one argument parser class and the range-checked flag types;
- `progress`: progress lines with rate and ETA;
- `input_names`: the classifier input names (`original`, `m<r>`);
- `names`: names read from tables and records, checked before they are joined to a folder;
- `imageio`, `dicom`: reading a radiograph (PNG, JPEG, 16-bit, DICOM) as (H, W) uint8 gray;
- `checkpoints`: the one guarded torch.load, atomic saves and the `--resume` policy;
- `device`: `--device` and `--precision` (float32 or bfloat16 where the hardware runs it).

Layers, bottom up: foundation <- model (vendor_medsam) <- segmentation (cxrseg) <- classification
(cxrcls); statistics (the rest of cxrstats) stand on the foundation only.
"""
