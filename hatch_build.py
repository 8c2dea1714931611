"""Build hook: an editable install gets the autoload ``.pth`` but no copies of the data folders."""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if version == "editable":
            build_data["force_include_editable"] = {"mede2_plugin_autoload.pth": "mede2_plugin_autoload.pth"}
