"""anytune backend for Fireworks AI, written only against anytune's public plugin surface
(`anytune.plugin`, `anytune.testing`): a third-party plugin, kept in anytune's examples as the model to copy."""
