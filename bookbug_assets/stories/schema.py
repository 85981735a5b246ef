"""Export the story JSON Schema: `python -m bookbug_assets.stories.schema > schemas/story.schema.json`."""

import json

from bookbug_assets.stories.models import Story


def story_json_schema() -> str:
    schema = Story.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bookbug_assets story"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(story_json_schema(), end="")
