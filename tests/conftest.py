import sys
from pathlib import Path

# tests/ holds shared helpers (fakes, builders); make them importable by name.
sys.path.insert(0, str(Path(__file__).parent))
