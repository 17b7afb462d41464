"""The built-in executor: phases on Anthropic's Messages API through the ``anthropic`` SDK.

Importing this package does not import the SDK; the first model call does.
"""

from engine.providers.anthropic._executor import AnthropicExecutor, create

__all__ = ["AnthropicExecutor", "create"]
