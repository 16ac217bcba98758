"""A chart's self-contained HTML page: what altair's `chart.save(..., inline=True)` writes, with the Vega bundle
read from disk.

The page embeds vl-convert's bundle of Vega, Vega-Lite and Vega-Embed (about 0.9 MB of JavaScript), so it
opens offline. vl-convert builds that bundle once per process, which takes 1.3–1.5 s on two cores: more than
drawing every figure of a run. It depends only on the vl-convert and Vega-Lite versions, so it is kept in the
user's cache directory under both and read back by later runs; the page is byte for byte altair's own
(tests/analysis/test_html_page.py). No dagster import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import altair as alt
import jinja2

from persona_assets.runs.storage import atomic_write_text, default_cache_dir

# altair's INLINE_HTML_TEMPLATE (altair/utils/html.py, altair 6), with `vegaembed_script` left to the
# template's globals: altair fills it only for its own template name "inline", by bundling again.
INLINE_PAGE = """\
<!DOCTYPE html>
<html>
<head>
  <meta charset="UTF-8">
  <style>
    #{{ output_div }}.vega-embed {
      width: 100%;
      display: flex;
    }

    #{{ output_div }}.vega-embed details,
    #{{ output_div }}.vega-embed details summary {
      position: relative;
    }
  </style>
  <script type="text/javascript">
    // vega-embed.js bundle with Vega-Lite version v{{ vegalite_version }}
    {{ vegaembed_script }}
  </script>
</head>
<body>
<div class="vega-visualization" id="{{ output_div }}"></div>
<script type="text/javascript">
  const spec = {{ spec }};
  const embedOpt = {{ embed_options }};
  vegaEmbed('#{{ output_div }}', spec, embedOpt).catch(console.error);
</script>
</body>
</html>
"""


def vega_lite_version() -> str:
    """The Vega-Lite version altair writes, as vl-convert names it (v6.4.1 -> v6_4)."""
    return "_".join(alt.SCHEMA_VERSION.split(".")[:2])


def vega_bundle(cache_dir: Path | None = None) -> str:
    """vl-convert's JavaScript bundle for this Vega-Lite version, from the cache directory when it is there."""
    import vl_convert as vlc

    path = (cache_dir or default_cache_dir()) / "vega-bundle" / f"vl-convert-{vlc.__version__}-{vega_lite_version()}.js"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    bundle = vlc.javascript_bundle(vl_version=vega_lite_version())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, bundle)
    except OSError:
        pass  # a read-only cache only costs the next run the bundling again
    return bundle


def chart_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The Vega-Lite spec of `chart` as altair's `save` builds it: every dataset inline, whatever its size."""
    with alt.data_transformers.enable("default"), alt.data_transformers.disable_max_rows():
        return chart.to_dict(context={"pre_transform": False})


def inline_html(spec: dict[str, Any], *, cache_dir: Path | None = None) -> str:
    """The self-contained HTML page of a chart's spec (`chart_spec`; opens offline, no CDN)."""
    from altair.utils.mimebundle import spec_to_mimebundle

    template = jinja2.Template(INLINE_PAGE)
    template.globals["vegaembed_script"] = vega_bundle(cache_dir)
    # What altair's chart.save(format="html") passes for the spec it builds (altair/utils/save.py).
    bundle = spec_to_mimebundle(
        spec=spec,
        format="html",
        mode="vega-lite",
        vega_version=alt.VEGA_VERSION,
        vegalite_version=alt.VEGALITE_VERSION,
        vegaembed_version=alt.VEGAEMBED_VERSION,
        embed_options=None,
        json_kwds={},
        template=template,
    )
    return bundle["text/html"]
