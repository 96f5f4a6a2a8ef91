// The flagged-tracts map: every tract coloured by tier, the listed ones emphasised, a click opens the tract.
// Loaded as a file (the Content-Security-Policy allows no inline script); text goes in with textContent only.
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el) { return; }
  if (!window.L) { el.textContent = "The map library did not load."; el.classList.add("map-error"); return; }
  var listed = {};
  var listedEl = document.getElementById("listed-tracts");
  var filtered = false;
  if (listedEl) {
    var ids = JSON.parse(listedEl.textContent);
    ids.forEach(function (g) { listed[g] = true; });
    filtered = true;
  }
  var tiers = [["high", "High"], ["elevated", "Elevated"], ["watch", "Watch"], ["low", "Low"]];
  var b = JSON.parse(el.getAttribute("data-bounds"));
  var map = L.map(el, { zoomSnap: 0.25, attributionControl: true });
  map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
  map.attributionControl.setPrefix("Leaflet");
  map.attributionControl.addAttribution("Tracts: U.S. Census Bureau");

  function tooltip(p) {
    var div = document.createElement("div");
    div.className = "tract-tooltip";
    var name = document.createElement("strong");
    name.textContent = p.name;
    var line = document.createElement("span");
    line.textContent = p.tier + " tier, " + (100 * p.probability).toFixed(1) + "%, " + p.status;
    div.appendChild(name);
    div.appendChild(line);
    return div;
  }

  var legend = L.control({ position: "bottomright" });
  legend.onAdd = function () {
    var div = L.DomUtil.create("div", "legend");
    tiers.forEach(function (t) {
      var row = document.createElement("div");
      var sw = document.createElement("span");
      sw.className = "swatch tier-" + t[0];
      row.appendChild(sw);
      row.appendChild(document.createTextNode(t[1]));
      div.appendChild(row);
    });
    return div;
  };
  legend.addTo(map);

  fetch(el.getAttribute("data-geojson"), { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
    .then(function (data) {
      var shown = [];
      var layer = L.geoJSON(data, {
        style: function (f) {
          var on = !filtered || listed[f.properties.geoid];
          return { color: on ? "#333" : "#888", weight: on ? 0.9 : 0.4, fillColor: f.properties.colour,
                   fillOpacity: on ? 0.9 : 0.3, className: "tract tract-" + f.properties.geoid +
                   " tier-" + f.properties.tier };
        },
        onEachFeature: function (f, lyr) {
          lyr.bindTooltip(tooltip(f.properties), { sticky: true });
          lyr.on("click", function () { window.location.href = "/tracts/" + f.properties.geoid; });
          if (filtered && listed[f.properties.geoid]) { shown.push(lyr); }
        }
      }).addTo(map);
      if (shown.length) { map.fitBounds(L.featureGroup(shown).getBounds(), { padding: [12, 12] }); }
      el.setAttribute("data-loaded", String(layer.getLayers().length));
    })
    .catch(function () {
      var p = document.createElement("p");
      p.textContent = "The map could not be loaded; the list beside it is complete.";
      el.appendChild(p);
      el.setAttribute("data-loaded", "error");
    });
})();
