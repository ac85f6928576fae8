"""The operations-center web console (``citywatch console``): live incidents, camera health, acks."""

from pipeline.console.board import IncidentBoard
from pipeline.console.server import ConsoleBindError, check_bind, create_app

__all__ = ["IncidentBoard", "create_app", "check_bind", "ConsoleBindError"]
