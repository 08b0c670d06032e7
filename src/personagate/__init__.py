"""personagate: find a chat model's refusal and compliant-persona directions, intervene, measure refusal."""

from personagate._version import __version__
from personagate.conversations import Conversation, load_conversations
from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.generation import Completion, Decoding, generate, next_token_logits
from personagate.interventions import Ablate, Add, Clamp, Program, Steering, Window, steer
from personagate.models import ArchitectureAdapter, ChatModel, load_model
from personagate.prompts import MODEL_DEFAULT, ChatFormatter

__all__ = [
    "MODEL_DEFAULT",
    "Ablate",
    "Add",
    "ArchitectureAdapter",
    "ChatFormatter",
    "ChatModel",
    "Clamp",
    "Completion",
    "Conversation",
    "Decoding",
    "Direction",
    "PersonagateError",
    "Program",
    "Steering",
    "Window",
    "__version__",
    "generate",
    "load_conversations",
    "load_model",
    "next_token_logits",
    "steer",
]
