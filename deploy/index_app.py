"""The functions and routes of `function_app`, indexed as the Python worker indexes them.

`deploy.check` runs this file as a script in a clean interpreter inside the unpacked
package (`python -I -S deploy/index_app.py <package dir>`), and imports `describe` to list
the checkout's own app for comparison. The worker (azure-functions-python-worker 4.34,
azure_functions_worker/loader.py `index_function_app`) takes the app's `get_functions()`
and turns each function into its function.json; both are done here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.functions import FunctionApp


def describe(app: FunctionApp) -> list[list[object]]:
    """Sorted [name, route, methods] of each HTTP-triggered function."""
    # Imported here: in the clean interpreter, azure.functions is importable only once
    # main() has put the package on the path.
    from azure.functions.decorators.http import HttpTrigger

    listed: list[list[object]] = []
    for function in app.get_functions():
        json.loads(function.get_function_json())  # fails as the worker would
        for binding in function.get_bindings():
            if isinstance(binding, HttpTrigger):
                methods = sorted(str(getattr(m, "value", m)) for m in binding.methods or [])
                listed.append([function.get_function_name(), binding.route, methods])
    return sorted(listed)


def main(package_dir: str) -> None:
    """Put the package on the path where the worker puts it, then import and index; then
    import every area (api/routes), which the worker does at each area's first invocation,
    not while indexing: a package lacking what an area needs fails here, not in production."""
    sys.path[:0] = [package_dir, f"{package_dir}/.python_packages/lib/site-packages"]
    import function_app

    print(json.dumps(describe(function_app.app)))
    if (Path(package_dir) / "api" / "routes" / "__init__.py").is_file():
        from api.routes import routers

        routers()


if __name__ == "__main__":
    main(sys.argv[1])
