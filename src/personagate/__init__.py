"""personagate: find a chat model's refusal and compliant-persona directions, intervene, measure refusal."""

from personagate.directions import Direction
from personagate.errors import PersonagateError
from personagate.generation import Completion, generate, next_token_logits
from personagate.interventions import Ablate, Add, Program, Steering, Window, steer
from personagate.models import ArchitectureAdapter, ChatModel, load_model
from personagate.prompts import MODEL_DEFAULT, ChatFormatter

__version__ = "0.1.0"

__all__ = [
    "MODEL_DEFAULT",
    "Ablate",
    "Add",
    "ArchitectureAdapter",
    "ChatFormatter",
    "ChatModel",
    "Completion",
    "Direction",
    "PersonagateError",
    "Program",
    "Steering",
    "Window",
    "__version__",
    "generate",
    "load_model",
    "next_token_logits",
    "steer",
]
