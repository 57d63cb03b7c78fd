"""The Hugging Face backend: anytune's own trainer on rented Hugging Face hardware (Jobs), or AutoTrain."""
