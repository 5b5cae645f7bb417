// The API explorer: Swagger UI on this gateway's own OpenAPI document. Nothing is
// loaded from or sent to another host: no validator badge, no specification from a
// URL in the address bar, requests only to the gateway that served this page.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", window.location.href).pathname,
    dom_id: "#swagger-ui",
    validatorUrl: "none",
    queryConfigEnabled: false,
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    persistAuthorization: false,
    displayRequestDuration: true,
  });
});
