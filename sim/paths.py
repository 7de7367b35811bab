"""Where the Hydra config tree lives: $DMFRAG_CONF_DIR, the repository's conf/ (an
editable install or a checkout), or the copy packed into the wheel (sim/_conf)."""
import os
from pathlib import Path


def conf_dir() -> Path:
    env = os.environ.get("DMFRAG_CONF_DIR")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "conf", here / "_conf"):
        if (cand / "config.yaml").is_file():
            return cand
    raise FileNotFoundError("dmfrag: no conf/ directory found (set DMFRAG_CONF_DIR)")
