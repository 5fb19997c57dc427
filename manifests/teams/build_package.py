"""Build the Teams app package: a zip with manifest.json, color.png and outline.png at its root.

    python manifests/teams/build_package.py --app-id <Microsoft App ID>
    MICROSOFT_APP_ID=<id> python manifests/teams/build_package.py [--output DIR]

The app id (the Azure Bot's Microsoft App ID, a GUID) replaces every {{MICROSOFT_APP_ID}}
in manifest.json. Upload the zip in Teams: Apps -> Manage your apps -> Upload an app.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PLACEHOLDER = "{{MICROSOFT_APP_ID}}"
PACKAGE = "liaison-teams.zip"
ICONS = ("color.png", "outline.png")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def build(app_id: str, output_dir: str) -> str:
    """Write the package into `output_dir` and return its path."""
    with open(os.path.join(HERE, "manifest.json"), encoding="utf-8") as file:
        text = file.read()
    manifest = json.loads(text.replace(PLACEHOLDER, app_id))
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, PACKAGE)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        for icon in ICONS:
            package.write(os.path.join(HERE, icon), arcname=icon)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Liaison Teams app package.")
    parser.add_argument("--app-id", default=os.environ.get("MICROSOFT_APP_ID", ""),
                        help="the bot's Microsoft App ID (default: $MICROSOFT_APP_ID)")
    parser.add_argument("--output", default=".",
                        help=f"directory to write {PACKAGE} into (default: current directory)")
    args = parser.parse_args(argv)
    app_id = args.app_id.strip()
    if not app_id:
        print("build_package.py: no app id. Pass --app-id <Microsoft App ID> or set "
              "MICROSOFT_APP_ID (the Azure Bot's app id, the same value Liaison runs with).",
              file=sys.stderr)
        return 2
    if not GUID.match(app_id):
        print(f"build_package.py: {app_id!r} is not a Microsoft App ID; Teams expects a GUID "
              "such as 00000000-0000-0000-0000-000000000000.", file=sys.stderr)
        return 2
    print(build(app_id, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
