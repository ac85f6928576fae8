"""The operations-center web console (``citywatch console``): live incidents, camera health, acks."""

from pipeline.app.console.board import IncidentBoard
from pipeline.app.console.server import ConsoleBindError, check_bind, create_app

__all__ = ["IncidentBoard", "create_app", "check_bind", "ConsoleBindError"]
