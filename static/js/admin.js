// The admin's view (shown to the server's admin only): the sign-up switch and the accounts.
import { listIn, request } from "./api.js";
import { $, h, say, when } from "./dom.js";

const SIGNUP_NOTES = {
  open: "Open: anyone who can reach this server can create an account.",
  closed: "Closed: nobody else can create an account; open it for a moment to let someone in.",
};
const CONFIGURED_NOTE = "Set by the server's configuration (SORNMEMORY_SIGNUP), so it cannot "
  + "be changed here: change it there and restart the server.";

export class AdminView {
  constructor(root) {
    this.signup = $("#admin-signup", root);
    this.note = $("#admin-signup-note", root);
    this.error = $("#admin-error", root);
    this.users = $("#admin-users", root);
    this.signup.addEventListener("change", () => this.setSignup());
  }

  /** Fetch the settings and the accounts again (each time the view is shown). */
  async load() {
    say(this.error, "");
    try {
      const [settings, users] = await Promise.all([
        request("GET", "/api/admin/settings"), request("GET", "/api/admin/users"),
      ]);
      this.showSettings(settings);
      this.showUsers(listIn(users, "users"));
    } catch (error) {
      say(this.error, error.message);
    }
  }

  showSettings({ signup, set_by: setBy }) {
    this.signup.checked = signup === "open";
    this.signup.disabled = setBy === "configuration";
    this.note.textContent = setBy === "configuration"
      ? `${SIGNUP_NOTES[signup]} ${CONFIGURED_NOTE}` : SIGNUP_NOTES[signup];
  }

  showUsers(users) {
    this.users.replaceChildren(...users.map((user) => h("tr", {},
      h("td", {}, user.username),
      h("td", {}, when(user.created_at)),
      h("td", {}, user.is_admin ? "admin" : "user"))));
  }

  async setSignup() {
    const wanted = this.signup.checked ? "open" : "closed";
    say(this.error, "");
    this.signup.disabled = true;
    try {
      this.showSettings(await request("PUT", "/api/admin/settings", { signup: wanted }));
    } catch (error) {
      this.signup.disabled = false;
      await this.load(); // show what the server has, not what was clicked
      say(this.error, error.message);
    }
  }
}
