// Starts Swagger UI from a file Keel serves, so /docs needs no inline script under its CSP.
// The page passes its settings as data-* attributes of the #swagger-ui element.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // No third-party validator badge: it would be an outside request the CSP refuses anyway.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
