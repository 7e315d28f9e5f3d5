"""Audio in memory: decoding files to 16 kHz mono PCM, and voice-activity segmentation."""
