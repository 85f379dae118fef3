// Starts Swagger UI on /api/docs. The page's status line stays, with what to do, when
// Swagger UI's script did not load or could not start; it goes once Swagger UI runs.
(function () {
  "use strict";
  var status = document.getElementById("docs-status");
  function fail(what) {
    status.firstChild.textContent =
      "The docs page could not start Swagger UI (" + what + "). " +
      "Reload the page; the API description itself is at ";
  }
  if (typeof window.SwaggerUIBundle !== "function") {
    fail("its script did not load");
    return;
  }
  try {
    window.SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#docs",
      validatorUrl: null, // the default badge would call validator.swagger.io
      deepLinking: true,
    });
    status.remove();
  } catch (error) {
    fail(String(error));
  }
})();
