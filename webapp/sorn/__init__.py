"""The spiking network: SORN (Lazar 2009, Zheng 2013) with its five plasticity rules,
token encoding and versioned save/load. Imports nothing else of the project."""

from webapp.sorn.config import SORNConfig
from webapp.sorn.encoding import TokenEncoder
from webapp.sorn.network import SORN
from webapp.sorn.storage import NetworkFileError, load_network

__all__ = ["SORN", "NetworkFileError", "SORNConfig", "TokenEncoder", "load_network"]
