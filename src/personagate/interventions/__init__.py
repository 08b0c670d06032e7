"""Interventions: the op vocabulary (``ops``), compiling a program to per-site edits (``compile``),
and the hooks with their steering handle (``steering``)."""

from personagate.interventions.compile import Plan, compile_program, divergence_matrix
from personagate.interventions.edits import SCOPES, Scope, Site, SiteEdit, SiteKind
from personagate.interventions.ops import OPS, Ablate, Add, Clamp, Op
from personagate.interventions.program import Program, op_from_flag, op_from_table
from personagate.interventions.project import Project
from personagate.interventions.steering import Steering, steer
from personagate.interventions.windows import LayerSpec, Window, range_text, resolve_layers

__all__ = [
    "OPS",
    "SCOPES",
    "Ablate",
    "Add",
    "Clamp",
    "LayerSpec",
    "Op",
    "Plan",
    "Program",
    "Project",
    "Scope",
    "Site",
    "SiteEdit",
    "SiteKind",
    "Steering",
    "Window",
    "compile_program",
    "divergence_matrix",
    "op_from_flag",
    "op_from_table",
    "range_text",
    "resolve_layers",
    "steer",
]
