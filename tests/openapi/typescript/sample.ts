// What a mobile developer writes against the types openapi-typescript generates from
// /api/openapi.json (as ./axly-api.ts). tsc must accept it as it is: minimal bodies compile,
// and each `@ts-expect-error` line must really be an error (else tsc fails on it).
import type { components, paths } from "./axly-api";

type Schemas = components["schemas"];
type RequestBody<Path extends keyof paths, Method extends keyof paths[Path]> = NonNullable<
  paths[Path][Method] extends { requestBody?: infer Body } ? Body : never
>;
type JsonBody<Path extends keyof paths, Method extends keyof paths[Path]> =
  RequestBody<Path, Method> extends { content: { "application/json": infer Body } } ? Body : never;
type Success<Path extends keyof paths, Method extends keyof paths[Path], Status extends number> =
  paths[Path][Method] extends { responses: { [S in Status]: infer Response } } ? Response : never;

// Minimal bodies: only what the API requires.
export const vehicle: JsonBody<"/api/vehicles", "post"> = { make: "Mazda", model: "MX-5", year: 1990 };
export const question: JsonBody<"/api/diagnose2", "post"> = { q: "It rattles at 3000 rpm" };
export const mod: JsonBody<"/api/vehicles/{vehicle_id}/mods", "post"> = { name: "Turbo kit" };
export const logout: JsonBody<"/api/logout", "post"> = {};
export const clearNickname: JsonBody<"/api/vehicles/{vehicle_id}", "patch"> = { nickname: null };

// @ts-expect-error year is required
export const noYear: JsonBody<"/api/vehicles", "post"> = { make: "Mazda", model: "MX-5" };
// @ts-expect-error make cannot be cleared
export const noMake: JsonBody<"/api/vehicles/{vehicle_id}", "patch"> = { make: null };
// @ts-expect-error unknown fields are refused
export const extra: JsonBody<"/api/diagnose2", "post"> = { q: "Hi", colour: "red" };

// Response headers are typed.
type Created = Success<"/api/vehicles", "post", 201>;
export function createdAt(response: Created): string {
  return response.headers.Location;
}
export function requestId(response: Success<"/api/health", "get", 200>): string {
  return response.headers["X-Request-ID"];
}

// Problems carry what the server sends with them.
export function explain(problem: Schemas["Problem"]): string {
  const wait: number | undefined = problem.retry_after;
  const fields = (problem.errors ?? []).map((error) => error.field);
  return [problem.code, problem.field ?? "", ...fields, String(wait ?? "")].join(" ");
}

// A message's content: a question, an answer, or a turn migrated from the old app.
type Content = NonNullable<Schemas["ConversationMessage"]["content"]>;
function isAnswer(content: Content): content is Schemas["AssistantTurn"] {
  return "diagnosis" in content && "answer" in content;
}
function isQuestion(content: Content): content is Schemas["UserTurn"] {
  return "attachments" in content && "dtc_codes" in content;
}
export function preview(message: Schemas["ConversationMessage"]): string {
  const content = message.content;
  if (content === null) {
    return "";
  }
  if (isAnswer(content)) {
    const severity: "low" | "medium" | "high" | "critical" = content.diagnosis.severity;
    return `${content.diagnosis.summary} (${severity})`;
  }
  if (isQuestion(content)) {
    const photos = content.attachments.filter((a) => a.kind === "image").length;
    return `${content.text ?? ""} [${photos} photo(s), ${content.dtc_codes.join(", ")}]`;
  }
  return JSON.stringify(content);
}

// Pages are named after what they hold.
export function vehicleNames(page: Schemas["VehiclePage"]): string[] {
  return page.items.map((v) => `${v.year} ${v.make} ${v.model}${v.nickname ? ` "${v.nickname}"` : ""}`);
}
