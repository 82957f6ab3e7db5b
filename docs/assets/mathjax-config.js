// MathJax 2 settings for pymdownx.arithmatex (generic mode wraps math in \( \) and \[ \]),
// read by assets/mathjax/MathJax.js, which is served from the site itself (no CDN).
// The combined configuration file holds the TeX input and the HTML-CSS output in one script.
window.MathJax = {
  config: ["TeX-AMS-MML_HTMLorMML-full.js"],
  MMLorHTML: { prefer: "HTML" },
  // A TeX error is shown as an error (and fails scripts/check_docs_render.py), never hidden.
  TeX: { noErrors: { disabled: true }, noUndefined: { disabled: true } },
  tex2jax: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    ignoreClass: ".*|",
    processClass: "arithmatex",
  },
  "HTML-CSS": {
    availableFonts: [],        // never depend on fonts installed on the reader's machine
    webFont: "STIX-Web",       // the web fonts shipped in assets/mathjax/fonts
    imageFont: null,
    linebreaks: { automatic: true },  // long display equations wrap at the page width
  },
  showProcessingMessages: false,
  messageStyle: "none",
  menuSettings: { zoom: "None" },
};

// Material's instant navigation swaps pages without a reload: typeset each new page.
if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (window.MathJax && window.MathJax.Hub) {
      MathJax.Hub.Queue(["Typeset", MathJax.Hub]);
    }
  });
}
