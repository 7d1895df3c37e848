"""`python -m control_plane`: build the control plane's binaries (once per pin) and print where they are."""

from control_plane.build import ControlPlaneError, binaries

try:
    built = binaries()
except ControlPlaneError as error:
    raise SystemExit(str(error)) from None
for component, path in built.items():
    print(f"{component}: {path}")
