"""Amazon Bedrock model customization (fine-tuning and continued pre-training of Nova and Llama models)."""
