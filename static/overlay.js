// The overlay's size, from ?scale= (validated by the server), as the CSS variable --scale. Set from
// a script because the Content-Security-Policy refuses inline styles (CSSOM changes are allowed).
(function () {
  "use strict";
  var root = document.getElementById("live");
  var scale = root ? Number(root.dataset.scale) : NaN;
  if (scale > 0) document.documentElement.style.setProperty("--scale", String(scale));
})();
