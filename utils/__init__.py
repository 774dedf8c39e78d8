"""Library code behind the notebooks: data, profiles, augmentation, distillation methods, results I/O."""
