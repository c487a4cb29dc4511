//! ModernBERT pretraining (spec §6–§7): data, packing, masking, optimizer, schedules, trainer, checkpoints.
