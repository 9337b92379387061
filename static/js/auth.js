// The login / registration screen.
import { request } from "./api.js";
import { $, say } from "./dom.js";

/** Wire the form; onSignedIn(user) runs after a successful login or registration. */
export function setupAuth(root, onSignedIn) {
  const form = $("#auth-form", root);
  const error = $("#auth-error", root);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter?.value === "register" ? "register" : "login";
    const body = { username: form.username.value.trim(), password: form.password.value };
    say(error, "");
    form.setAttribute("aria-busy", "true");
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    try {
      await request("POST", `/api/auth/${action}`, body);
      const { user } = await request("GET", "/api/auth/me");
      form.password.value = "";
      onSignedIn(user);
    } catch (failure) {
      say(error, failure.message);
      if (failure.code === "signup_closed") showSignup(root); // closed since the page loaded
      form.password.select();
    } finally {
      form.removeAttribute("aria-busy");
      for (const button of form.querySelectorAll("button")) button.disabled = false;
    }
  });
}

/** Offer "Create account" only when sign-up is open (a server with no account yet always
 * is: its first account is the admin); when closed, say so instead. */
export async function showSignup(root) {
  const state = await request("GET", "/api/auth/signup").catch(() => ({ signup: "open" }));
  const closed = state.signup === "closed";
  $("#auth-register", root).hidden = closed;
  $("#auth-signup-closed", root).hidden = !closed;
}

/** The signed-in user, or null (401). */
export async function currentUser() {
  try {
    return (await request("GET", "/api/auth/me")).user;
  } catch (failure) {
    if (failure.status === 401) return null;
    throw failure;
  }
}
