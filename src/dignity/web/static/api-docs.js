// Starts Swagger UI on /docs against our own OpenAPI document (a file, not an inline script,
// so the page keeps the strict script-src 'self' policy).
"use strict";
window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
