// MathJax's settings, read before MathJax itself loads (mkdocs.yml lists this file first).
// pymdownx.arithmatex writes each formula as \( \) or \[ \] inside an element of class
// "arithmatex"; MathJax typesets those and leaves the rest of the page alone.
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]],
        processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"},
};
