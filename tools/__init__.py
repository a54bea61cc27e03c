"""The tools: their argument and result models, the tool functions, resources and prompts, rendering, and the
delivery report view. ``tools.catalog`` lists what is served."""
