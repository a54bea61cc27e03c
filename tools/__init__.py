"""The six message-session tools: their argument and result models, and the tool functions."""
